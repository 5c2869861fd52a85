"""Reports: terminal tables, JSON/CSV/Markdown."""
