"""Boards: pages of pinned workbench results, each refreshing on its own schedule."""
