"""Questions in plain words: a question in, a draft SQL query for the workbench out.

The draft is shown, never run, until its user presses Run; it then runs in the workbench's sandbox
like any cell. A real model (Gemini, an OpenAI-compatible server) writes the draft from the views'
schema — names, types and one-line descriptions, and a few rows of each view only when the user
allows it (``schema``); the offline simulated model answers the common questions from templates
(``templates``) and says plainly when a question is not one of them. Every draft is audited
(question, model, SQL) and labelled as generated (``drafts``), and a stored draft is read back from
its audit event, so a link (``/workbench?ask=<id>``) reopens it.
"""
