"""Seeing the flow: the interactive HTML viewer, static figures and notebook display."""
