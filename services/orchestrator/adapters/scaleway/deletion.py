"""What to do next to make a server go away, from its state alone (pure; scaleway.md §0.5, §1.1).

``terminate`` releases compute and deletes local volumes but only detaches block volumes; some
GPU servers booting from block storage refuse it. The fallback is poweroff -> stopped ->
DELETE. Each call of the teardown re-reads the server and asks again, so a teardown resumed
after a crash or a timeout continues from wherever the server is.
"""

from __future__ import annotations

from typing import Literal, Sequence

Step = Literal["terminate", "poweroff", "delete", "wait", "locked"]


def next_delete_step(state: str, allowed_actions: Sequence[str], terminate_refused: bool) -> Step:
    if state == "locked":
        return "locked"  # a Scaleway-side lock (billing, abuse, maintenance): nothing we can do
    if state == "stopped":
        return "delete"  # allowed_actions may be empty right after create; DELETE works anyway
    if state == "stopped_in_place":
        return "poweroff"  # still holds the hypervisor slot; DELETE is refused here
    if state == "running":
        if "terminate" in allowed_actions and not terminate_refused:
            return "terminate"
        if "poweroff" in allowed_actions:
            return "poweroff"
    return "wait"  # starting / stopping / anything new: let it settle
