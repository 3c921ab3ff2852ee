"""Losses, one per file: :mod:`~zerohar.losses.contrastive` (Stage I / II), :mod:`~zerohar.losses.pretext`
(SSL-Wearables multi-task pretraining)."""
