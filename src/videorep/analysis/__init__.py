"""Instruments for Co-Settle's claims: the trade-off metrics (:mod:`.tradeoff`), feature
extraction for them (:mod:`.features`), the spectral check of the theory (:mod:`.spectrum`),
the position-shortcut controls (:mod:`.shortcut`) and run reports (:mod:`.report`)."""
