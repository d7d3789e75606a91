"""PI2I stage 2, PRS: the interactive scoring model of P(target | user, trigger).

API::

    model = PRSModel(PRSConfig(n_items=..., n_categories=..., user_cardinalities=[...], n_cross=9))
    logits = model(user_codes, trig, cands, cross, seq)   # [B, C]
    logits = model(user_codes, trig, cands, cross, seq, example_seq=idx)   # seq [S, L] shared by rows

Inputs, per example b and candidate c (item positions are shifted by +1; 0 = padding):
``user_codes`` long [B, F] (categorical user features, 0 = unknown), ``trig`` long [B],
``cands`` long [B, C], ``cross`` float [B, C, X] (recsys.pi2i.features.CROSS_FEATURES),
``seq`` long [B, L] (the user's behaviour sequence, left-padded). With ``example_seq`` (long [B]),
``seq`` holds S distinct sequences and example b reads row ``example_seq[b]`` (serving: one
sequence per user, shared by all the user's triggers).

Architecture: item and category embeddings (shared by trigger, targets and sequence), one
embedding per user feature, a projection of the cross features; the attention QUERY is an MLP of
(trigger, target, cross), so each trigger–target pair reads the behaviour sequence differently;
a multi-head attention over the sequence (item + category + position embeddings, plus one learned
always-visible slot so an empty sequence is defined); a DNN maps [user, trigger, target, cross,
attention output, attention output ⊙ target] to one logit.

Compute (same function as the concatenation form, which ``forward_reference`` spells out): the
first layers of the query MLP and of the DNN are linear in their inputs, so their matrices are
split by input block. The trigger/user block is multiplied once per example, the target-item
block once per DISTINCT candidate item in the batch (then gathered), and only the cross and
attention blocks once per (example, candidate) pair. The query MLP's output layer and the
attention's query projection are consecutive linear maps and are applied as one product.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

CROSS_WIDTH = 16
QUERY_WIDTH = 64


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
    hidden: tuple[int, ...] = (64, 32)
    dropout: float = 0.1

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PRSConfig:
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
        if c.dim % c.heads:
            raise ValueError(f"dim {c.dim} must be divisible by heads {c.heads}")
        self.item = nn.Embedding(c.n_items + 1, c.dim, padding_idx=0)
        self.category = nn.Embedding(c.n_categories + 1, c.cat_dim)
        cats = torch.zeros(c.n_items + 1, dtype=torch.long)
        if item_categories is not None:
            cats[1:] = item_categories.long()
        # Category of each (shifted) item position; saved with the state so serving needs no frame.
        self.register_buffer("item_category", cats)
        self.users = nn.ModuleList(nn.Embedding(card + 1, c.user_dim) for card in c.user_cardinalities)
        self.position = nn.Embedding(c.seq_len, c.dim)
        self.item_width = item_width = c.dim + c.cat_dim
        self.cross = nn.Sequential(nn.Linear(c.n_cross, CROSS_WIDTH), nn.ReLU())
        # Query MLP first layer on [trigger | target, cross], split by block (see module docstring).
        self.query_trig = nn.Linear(item_width, QUERY_WIDTH, bias=False)
        self.query_pair = nn.Linear(item_width + CROSS_WIDTH, QUERY_WIDTH)
        self.query_out = nn.Linear(QUERY_WIDTH, c.dim)
        self.key = nn.Linear(item_width, c.dim)
        self.empty_slot = nn.Parameter(torch.zeros(1, 1, c.dim))
        self.attention = nn.MultiheadAttention(c.dim, c.heads, batch_first=True, dropout=0.0)
        h0, rest = c.hidden[0], tuple(c.hidden[1:])
        # DNN first layer on [user, trigger | target, cross, att, att ⊙ target].
        self.dnn_example = nn.Linear(len(c.user_cardinalities) * c.user_dim + item_width, h0, bias=False)
        self.dnn_pair = nn.Linear(item_width + CROSS_WIDTH + 2 * c.dim, h0)
        self.dnn = nn.Sequential(nn.ReLU(), nn.Dropout(c.dropout), _mlp(h0, rest, 1, c.dropout))
        nn.init.normal_(self.item.weight, std=0.05)
        with torch.no_grad():
            self.item.weight[0].zero_()

    def _item_repr(self, pos: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.item(pos), self.category(self.item_category[pos])], dim=-1)

    def _example_part(self, user_codes, trig):
        t = self._item_repr(trig)  # [B, W]
        example = [t]
        if len(self.users):
            example.insert(0, torch.cat([emb(user_codes[:, f]) for f, emb in enumerate(self.users)], dim=-1))
        return t, self.dnn_example(torch.cat(example, dim=-1))

    def _keys(self, seq):
        """Attention keys/values of each sequence: [S, H, L + 1, hd] twice, and the padding mask."""
        c, s = self.config, seq.shape[0]
        keys = self.key(self._item_repr(seq)) + self.position.weight[-seq.shape[1] :][None]
        keys = torch.cat([self.empty_slot.expand(s, 1, -1), keys], dim=1)
        w, b = self.attention.in_proj_weight, self.attention.in_proj_bias
        k = F.linear(keys, w[c.dim : 2 * c.dim], b[c.dim : 2 * c.dim])
        v = F.linear(keys, w[2 * c.dim :], b[2 * c.dim :])
        split = lambda a: a.view(s, -1, c.heads, c.dim // c.heads).transpose(1, 2)  # noqa: E731
        visible = torch.cat([torch.ones(s, 1, dtype=torch.bool, device=seq.device), seq != 0], dim=1)
        return split(k), split(v), visible

    def forward(self, user_codes, trig, cands, cross, seq, example_seq=None) -> torch.Tensor:
        c, w = self.config, self.item_width
        b, n_c = cands.shape
        t, ex_hidden = self._example_part(user_codes, trig)  # [B, W], [B, h0]
        # Per distinct candidate item: its blocks of both first layers and its embedding.
        uniq, inv = torch.unique(cands, return_inverse=True)
        g = self._item_repr(uniq)
        q_item = F.linear(g, self.query_pair.weight[:, :w])
        d_item = F.linear(g, self.dnn_pair.weight[:, :w])
        e_item = self.item(uniq)
        x = self.cross(cross)  # [B, C, 16]
        q_hidden = torch.relu(
            F.linear(x, self.query_pair.weight[:, w:], self.query_pair.bias) + q_item[inv] + self.query_trig(t)[:, None, :]
        )
        # query_out then the attention's query projection: one linear map.
        w_q, b_q = self.attention.in_proj_weight[: c.dim], self.attention.in_proj_bias[: c.dim]
        q = F.linear(q_hidden, w_q @ self.query_out.weight, w_q @ self.query_out.bias + b_q)
        k, v, visible = self._keys(seq)
        if example_seq is not None:
            k, v, visible = k[example_seq], v[example_seq], visible[example_seq]
        q = q.view(b, n_c, c.heads, -1).transpose(1, 2)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=visible[:, None, None, :])
        att = self.attention.out_proj(att.transpose(1, 2).reshape(b, n_c, c.dim))
        h = F.linear(torch.cat([x, att, att * e_item[inv]], dim=-1), self.dnn_pair.weight[:, w:], self.dnn_pair.bias)
        h = h + d_item[inv] + ex_hidden[:, None, :]
        return self.dnn(h).squeeze(-1)

    def forward_reference(self, user_codes, trig, cands, cross, seq) -> torch.Tensor:
        """The unfactorized form (one matrix on each concatenation, nn.MultiheadAttention): for tests."""
        b = cands.shape[0]
        t, g, x = self._item_repr(trig), self._item_repr(cands), self.cross(cross)
        q = self.query_out(torch.relu(self.query_trig(t)[:, None, :] + self.query_pair(torch.cat([g, x], dim=-1))))
        keys = self.key(self._item_repr(seq)) + self.position.weight[-seq.shape[1] :][None]
        keys = torch.cat([self.empty_slot.expand(b, 1, -1), keys], dim=1)
        pad = torch.cat([torch.zeros(b, 1, dtype=torch.bool, device=seq.device), seq == 0], dim=1)
        att, _ = self.attention(q, keys, keys, key_padding_mask=pad, need_weights=False)
        _, ex_hidden = self._example_part(user_codes, trig)
        h = ex_hidden[:, None, :] + self.dnn_pair(torch.cat([g, x, att, att * self.item(cands)], dim=-1))
        return self.dnn(h).squeeze(-1)
