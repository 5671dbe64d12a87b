"""Figures: reconstructions, masks and their AvgDist, as arrays and as PNG panels."""
