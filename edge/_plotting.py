"""matplotlib for the on-device commands' ``--plots``: optional, Agg backend, lazy."""

from __future__ import annotations

from typing import Any

__all__ = ["INSTALL_HINT", "pyplot"]

INSTALL_HINT = "--plots needs matplotlib: pip install matplotlib (or 'semedge[dev]')"


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend; ``ImportError`` naming what to install."""
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError(f"{INSTALL_HINT} ({err})") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt
