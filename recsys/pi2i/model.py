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
attention output, attention output ⊙ target] to one logit.
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
        self.query = _mlp(2 * item_width + 16, (64,), c.dim, 0.0)
        self.key = nn.Linear(item_width, c.dim)
        self.empty_slot = nn.Parameter(torch.zeros(1, 1, c.dim))
        self.attention = nn.MultiheadAttention(c.dim, c.heads, batch_first=True, dropout=0.0)
        n_in = len(c.user_cardinalities) * c.user_dim + 2 * item_width + 16 + 2 * c.dim
        self.dnn = _mlp(n_in, c.hidden, 1, c.dropout)
        nn.init.normal_(self.item.weight, std=0.05)
        with torch.no_grad():
            self.item.weight[0].zero_()

    def _item_repr(self, pos: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.item(pos), self.category(self.item_category[pos])], dim=-1)

    def forward(self, user_codes, trig, cands, cross, seq) -> torch.Tensor:
        b, n_c = cands.shape
        t = self._item_repr(trig)[:, None, :].expand(b, n_c, -1)
        g = self._item_repr(cands)
        x = self.cross(cross)
        q = self.query(torch.cat([t, g, x], dim=-1))  # [B, C, dim]
        seq_len = seq.shape[1]
        keys = self.key(self._item_repr(seq)) + self.position.weight[-seq_len:][None]
        keys = torch.cat([self.empty_slot.expand(b, 1, -1), keys], dim=1)
        pad = torch.cat([torch.zeros(b, 1, dtype=torch.bool, device=seq.device), seq == 0], dim=1)
        att, _ = self.attention(q, keys, keys, key_padding_mask=pad, need_weights=False)
        parts = [t, g, x, att, att * self.item(cands)]
        if len(self.users):
            u = torch.cat([emb(user_codes[:, f]) for f, emb in enumerate(self.users)], dim=-1)
            parts.insert(0, u[:, None, :].expand(b, n_c, -1))
        return self.dnn(torch.cat(parts, dim=-1)).squeeze(-1)
