"""Whole-database work that needs the layers below it: restoring a backup (which pauses what was
mid-send and refuses while a dispatcher runs)."""
