"""Alerts that reach people: rules over the event log and the budgets, evaluated every minute by
one process of a deployment (a database lease), with a lifecycle pending → firing → resolved and
signed webhook notifications that are claimed once, so none is ever sent twice.

- ``rules``: the kinds of rule, the seeded defaults and how each is measured;
- ``service``: ``AlertService`` — rules, silences and webhooks (audited), ``check`` and history;
- ``webhooks``: the message body (generic JSON that is also a Slack message), its signature and
  delivery with retries;
- ``lease``: the database lease; ``scheduler``: the app's once-a-minute evaluator.
"""
