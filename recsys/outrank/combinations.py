"""Pairwise scores between features: 3MR redundancy and "A AND_REL B" relations, plus NMI.

API:
    and_rel(a: EncodedColumn, b: EncodedColumn) -> EncodedColumn
        the combined categorical feature whose value is the pair (a, b), dense codes
    redundancy_matrix(names, encoded, n_jobs) -> np.ndarray[F, F]
        MI-randomized between features; pair (a, b) with a < b by name is scored with a as the
        feature and b as the conditioning "label", and the score is used for both orders,
        exactly as outrank's ranking loop does with combinations_with_replacement(sorted names)
    relation_matrix(names, encoded, label_groups, n_jobs) -> np.ndarray[F, F]
        MI-randomized of "a AND_REL b" with the label, symmetric
    pair_nmi(a, b, permutation) -> float
        normalized mutual information adjusted for chance, in [0, 1]:
        (I(A;B) − I(A;B_perm)) / ((H(A) + H(B))/2 − I(A;B_perm)), B_perm = B's rows permuted.
        Like sklearn's AMI but with one permutation as the chance estimate: a relabelled copy
        scores ≈ 1, while a unique id (which "determines" everything) scores ≈ 0.

Diagonals are NaN: 3MR never compares a feature with itself.
"""

from __future__ import annotations

import itertools

import numpy as np

from recsys.outrank.encoding import EncodedColumn, compact_int_codes
from recsys.outrank.entropy import entropy, joint_xlogx
from recsys.outrank.mi import LabelGroups, mi_randomized
from recsys.outrank.parallel import thread_map


def and_rel(a: EncodedColumn, b: EncodedColumn) -> EncodedColumn:
    """Exact pair codes (outrank hashes the concatenated strings, where "1"+"23" == "12"+"3")."""
    key = a.codes.astype(np.int64) * b.cardinality + b.codes
    codes, cardinality = compact_int_codes(key)
    return EncodedColumn(codes=codes, cardinality=cardinality, n_null=0)


def _pairs(names: list[str]) -> list[tuple[int, int]]:
    order = sorted(range(len(names)), key=lambda i: names[i])
    return list(itertools.combinations(order, 2))


def redundancy_matrix(names: list[str], encoded: dict[str, EncodedColumn], n_jobs: int = 2) -> np.ndarray:
    f = len(names)
    groups = dict(
        zip(
            names,
            thread_map(lambda n: LabelGroups.build(encoded[n].codes, encoded[n].cardinality), names, n_jobs),
        )
    )
    pairs = _pairs(names)

    def score(pair: tuple[int, int]) -> float:
        first, second = names[pair[0]], names[pair[1]]
        return mi_randomized(encoded[first].codes, encoded[first].cardinality, groups[second])

    values = thread_map(score, pairs, n_jobs)
    matrix = np.full((f, f), np.nan)
    for (i, j), value in zip(pairs, values):
        matrix[i, j] = matrix[j, i] = value
    return matrix


def relation_matrix(names: list[str], encoded: dict[str, EncodedColumn], label_groups: LabelGroups, n_jobs: int = 2) -> np.ndarray:
    f = len(names)
    pairs = _pairs(names)

    def score(pair: tuple[int, int]) -> float:
        combined = and_rel(encoded[names[pair[0]]], encoded[names[pair[1]]])
        return mi_randomized(combined.codes, combined.cardinality, label_groups)

    values = thread_map(score, pairs, n_jobs)
    matrix = np.full((f, f), np.nan)
    for (i, j), value in zip(pairs, values):
        matrix[i, j] = matrix[j, i] = value
    return matrix


def _mutual_information(a: EncodedColumn, b_codes: np.ndarray, b_cardinality: int, h_a: float, h_b: float) -> float:
    n = a.codes.size
    h_ab = float(np.log(n)) - joint_xlogx(a.codes, b_codes, b_cardinality, a.cardinality * b_cardinality) / n
    return h_a + h_b - h_ab


def pair_nmi(a: EncodedColumn, b: EncodedColumn, permutation: np.ndarray) -> float:
    n = a.codes.size
    h_a, h_b = entropy(a.codes, a.cardinality), entropy(b.codes, b.cardinality)
    if n == 0 or h_a + h_b <= 0.0:
        return 0.0
    mi = _mutual_information(a, b.codes, b.cardinality, h_a, h_b)
    chance = _mutual_information(a, b.codes[permutation], b.cardinality, h_a, h_b)
    denominator = 0.5 * (h_a + h_b) - chance
    if denominator <= 1e-12:
        return 0.0
    return float(np.clip((mi - chance) / denominator, 0.0, 1.0))
