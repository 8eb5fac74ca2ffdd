"""The dashboard keeps no tables of its own: it reads the other apps' (analytics, the operators' views)."""
