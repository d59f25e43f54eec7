"""Methods: Co-Settle (projection on a frozen image encoder) and BOD-VCL (Koopman V-CL)."""
