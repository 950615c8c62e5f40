"""The QuickBooks emulator (being built)."""

from __future__ import annotations

from daemon.provider import EmulatorSettings
from daemon.testing.emulator import Emulator


class QuickBooksEmulator(Emulator):
    def __init__(self, settings: EmulatorSettings | None = None) -> None:
        super().__init__(settings)
