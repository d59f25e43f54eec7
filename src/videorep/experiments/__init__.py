"""Controlled experiments (BOD-VCL synthetic study: BOD-VCL, Sec. 5.5)."""
