"""The demo report: figures (``figures``) and the Markdown/HTML writer (``writer``)."""
