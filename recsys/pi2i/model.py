"""PI2I stage 2, PRS: the interactive scoring model of P(target | user, trigger).

API::

    model = PRSModel(PRSConfig(n_items=..., n_categories=..., user_cardinalities=[...], n_cross=9))
    logits = model(user_codes, trig, cands, cross, seq)   # [B, C]

Inputs, per example b and candidate c (item positions are shifted by +1; 0 = padding):
``user_codes`` long [B, F] (categorical user features, 0 = unknown), ``trig`` long [B],
``cands`` long [B, C], ``cross`` float [B, C, X] (recsys.pi2i.features.CROSS_FEATURES),
``seq`` long [B, L] (the user's behaviour sequence, left-padded).

Architecture: item and category embeddings (shared by trigger, targets and sequence), one
embedding per user feature, a projection of the cross features; the attention QUERY is an MLP of
(trigger, target, cross), so each trigger–target pair reads the behaviour sequence differently;
a multi-head attention over the sequence (item + category + position embeddings, plus one learned
always-visible slot so an empty sequence is defined); a DNN maps [user, trigger, target, cross,
attention output, attention output ⊙ target] to one logit. The first layer of the query MLP and
of the DNN is split into a per-example and a per-candidate matrix (same function as one matrix
on the concatenation), so per-example inputs are not repeated C times.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn


@dataclass
class PRSConfig:
    n_items: int
    n_categories: int
    user_cardinalities: list[int] = field(default_factory=list)
    n_cross: int = 9
    dim: int = 32
    cat_dim: int = 8
    user_dim: int = 8
    heads: int = 2
    seq_len: int = 30
    hidden: tuple[int, ...] = (128, 64)
    dropout: float = 0.1

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PRSConfig":
        d = dict(d)
        d["hidden"] = tuple(d["hidden"])
        return cls(**d)


def _mlp(n_in: int, hidden: tuple[int, ...], n_out: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(n_in, h), nn.ReLU(), nn.Dropout(dropout)]
        n_in = h
    layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


class PRSModel(nn.Module):
    def __init__(self, config: PRSConfig, item_categories: torch.Tensor | None = None):
        super().__init__()
        c = self.config = config
        self.item = nn.Embedding(c.n_items + 1, c.dim, padding_idx=0)
        self.category = nn.Embedding(c.n_categories + 1, c.cat_dim)
        cats = torch.zeros(c.n_items + 1, dtype=torch.long)
        if item_categories is not None:
            cats[1:] = item_categories.long()
        # Category of each (shifted) item position; saved with the state so serving needs no frame.
        self.register_buffer("item_category", cats)
        self.users = nn.ModuleList(nn.Embedding(card + 1, c.user_dim) for card in c.user_cardinalities)
        self.position = nn.Embedding(c.seq_len, c.dim)
        item_width = c.dim + c.cat_dim
        self.cross = nn.Sequential(nn.Linear(c.n_cross, 16), nn.ReLU())
        # First layers are split into a per-example part (user, trigger) and a per-candidate part,
        # so the wide per-example inputs are multiplied once, not once per candidate.
        self.query_trig = nn.Linear(item_width, 64, bias=False)
        self.query_pair = nn.Linear(item_width + 16, 64)
        self.query_out = nn.Linear(64, c.dim)
        self.key = nn.Linear(item_width, c.dim)
        self.empty_slot = nn.Parameter(torch.zeros(1, 1, c.dim))
        self.attention = nn.MultiheadAttention(c.dim, c.heads, batch_first=True, dropout=0.0)
        h0, rest = c.hidden[0], tuple(c.hidden[1:])
        self.dnn_example = nn.Linear(len(c.user_cardinalities) * c.user_dim + item_width, h0, bias=False)
        self.dnn_pair = nn.Linear(item_width + 16 + 2 * c.dim, h0)
        self.dnn = nn.Sequential(nn.ReLU(), nn.Dropout(c.dropout), _mlp(h0, rest, 1, c.dropout))
        nn.init.normal_(self.item.weight, std=0.05)
        with torch.no_grad():
            self.item.weight[0].zero_()

    def _item_repr(self, pos: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.item(pos), self.category(self.item_category[pos])], dim=-1)

    def forward(self, user_codes, trig, cands, cross, seq) -> torch.Tensor:
        b = cands.shape[0]
        t = self._item_repr(trig)  # [B, W]
        g = self._item_repr(cands)  # [B, C, W]
        x = self.cross(cross)
        q = self.query_out(torch.relu(self.query_trig(t)[:, None, :] + self.query_pair(torch.cat([g, x], dim=-1))))
        seq_len = seq.shape[1]
        keys = self.key(self._item_repr(seq)) + self.position.weight[-seq_len:][None]
        keys = torch.cat([self.empty_slot.expand(b, 1, -1), keys], dim=1)
        pad = torch.cat([torch.zeros(b, 1, dtype=torch.bool, device=seq.device), seq == 0], dim=1)
        att, _ = self.attention(q, keys, keys, key_padding_mask=pad, need_weights=False)
        example = [t]
        if len(self.users):
            example.insert(0, torch.cat([emb(user_codes[:, f]) for f, emb in enumerate(self.users)], dim=-1))
        h = self.dnn_example(torch.cat(example, dim=-1))[:, None, :] + self.dnn_pair(
            torch.cat([g, x, att, att * self.item(cands)], dim=-1))
        return self.dnn(h).squeeze(-1)
