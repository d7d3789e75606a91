"""Candidate channels: each fits on a history frame and recommends top-K items per user."""
