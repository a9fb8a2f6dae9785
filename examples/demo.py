"""Placeholder demo: replaced by the notebook demo."""
