"""Training: one trainer loop shared by every method (Co-Settle, BOD-VCL)."""
