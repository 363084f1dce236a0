"""Replit Code v1.5 (MPT architecture) on the MAX Graph API."""
