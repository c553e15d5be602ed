"""Read Markdown the way Streamlit's browser does, and say where each link and image sits.

Streamlit 1.67 renders ``st.markdown`` with react-markdown: micromark with GFM (tables,
strikethrough, bare-URL literals, footnotes), remark-math when its own heuristic sees ``$`` math,
and remark-directive. markdown-it-py follows the same CommonMark spec, so it is the base here;
where micromark differs in a way that decides what is a link, an image or code, a rule in
``micromark`` or ``literals`` models micromark instead. ``locations`` maps inline text back to the
source, and ``reading`` puts the parser together and returns the spans.
"""

from nexus_core.markdown._reading.collector import ReadingFailed
from nexus_core.markdown._reading.reading import InlineSpan, Reading, read_markdown

__all__ = ["InlineSpan", "Reading", "ReadingFailed", "read_markdown"]
