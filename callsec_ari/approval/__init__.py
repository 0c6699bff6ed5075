"""Payment approval bound to amount and payee (PSD2-style dynamic linking on the phone)."""
