"""One progress bar style for every long loop (tqdm; quiet when stderr is not a terminal)."""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm


def progress_bar(total: int, desc: str, unit: str = "it", leave: bool = False, initial: int = 0):
    # GANAUG_PROGRESS=1 forces the bar on (e.g. in logs), 0 forces it off; default: terminals only.
    setting = os.environ.get("GANAUG_PROGRESS")
    disable = (setting == "0") if setting in ("0", "1") else not sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit=unit, leave=leave, disable=disable, initial=initial,
                dynamic_ncols=True, mininterval=0.5)
