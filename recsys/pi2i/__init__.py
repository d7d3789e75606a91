"""PI2I (Taobao, WWW 2026): relaxed-truncation item index (IBS) + interactive scoring model (PRS).

    from recsys.pi2i import PI2I, PI2IIndexChannel, build_relaxed_index, hit_rate_vs_depth

See index.py (stage 1), model.py / train.py (stage 2) and serve.py (the channel); docs/pi2i.md.
"""

from recsys.pi2i.index import PI2IIndexChannel, build_relaxed_index, hit_rate_vs_depth
from recsys.pi2i.model import PRSConfig, PRSModel
from recsys.pi2i.serve import PI2I

__all__ = ["PI2I", "PI2IIndexChannel", "PRSConfig", "PRSModel", "build_relaxed_index", "hit_rate_vs_depth"]
