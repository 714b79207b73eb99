"""Service-level agreements of tasks: configs, clocks, the sweep and compliance.

- ``rules``: SLA config documents (validation with JSON paths), the compiled ``SLASpec``,
  and which config a task gets (the most specific active one; see
  ``tasks_inbox.models.SLA_SPECIFICITY_RULE``).
- ``calendar``: clock arithmetic, around the clock or in working hours (zoneinfo).
- ``clock``: a task's clock in its ``sla_*`` columns; the hooks the task services call on
  creation and on every transition (start, pause while blocked, resume, stop).
- ``configs``: saving and deleting configs, and recomputing open tasks when one is edited.
- ``sweep``: the beat sweep that fires warnings, breaches and escalation levels once each.
- ``fire``: what a claimed batch of the sweep does, with a fixed number of set-based
  statements per batch (records, task updates, history, events, notifications, live updates).

Configs edited mid-flight: saving a config recomputes, in the same transaction, every open
task that uses it from the task's own clock (its start, the time already counted, the new
durations and working hours). Thresholds already fired stay fired (a breach is never undone
by a longer target); thresholds the new durations put in the past fire at the next sweep;
tasks whose clock has not started yet use the new start state when they next change state;
pausing follows the new setting at once. Deactivating a config stops its open tasks from
firing anything (their clocks keep counting and are judged when they end); reactivating it
fires what became due meanwhile. A task keeps the config it got at creation.
"""
