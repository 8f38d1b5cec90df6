"""Helpers several test layers share, one small module a job."""
