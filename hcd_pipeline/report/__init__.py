"""Quality reports over Parquet metric tables: HTML, text, charts and pictures."""
