"""Forecasts scored as their outcomes arrive: live sums, shadow models, paired verdicts, drift."""
