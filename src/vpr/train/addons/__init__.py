"""Add-on loss terms, attached to any method's objective: domain adaptation (a gradient-reversal domain
classifier), VICReg between two views, GPM's proxy head."""
