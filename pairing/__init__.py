"""pairing: share one terminal across the internet through a disposable relay."""
