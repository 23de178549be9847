"""`--tensorboard`: scalars (and image grids) in the run folder's tensorboard/ subfolder."""

from __future__ import annotations

from pathlib import Path

from .errors import UserError


class ScalarLogger:
    def __init__(self, folder: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError("--tensorboard needs the tensorboard package: "
                            "pip install 'ganaug[tensorboard]'") from None
        self.writer = SummaryWriter(log_dir=str(folder))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)

    def images(self, step: int, name: str, grid) -> None:
        """grid: float [3 or 1, H, W] in [0, 1]."""
        self.writer.add_image(name, grid, step)

    def close(self) -> None:
        self.writer.close()
