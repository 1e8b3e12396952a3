"""OSWorld-style tasks on the desktop: setup steps, getters and metrics.

Each step type, getter and metric is one registration (`registry.Registry`) in
its module (`steps`, `getters`, `metrics`); `evaluation` joins getters and
metrics into a score; `browser` holds the URL and address-bar rules the
Chromium steps and getters share. They act on the desktop only through a `host.TaskHost`,
which the desktop toolset implements as the session user
(`sandbox/agent/toolsets/_desktop_tasks.py`) and unit tests fake.
"""
