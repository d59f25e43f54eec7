"""Controlled experiments (BOD-VCL synthetic study, Sec. 5.5 of seed 003)."""
