"""Bottom-layer helpers shared by every part of videorep (no imports from other subpackages)."""
