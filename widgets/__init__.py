"""The live actor-tree widget (anywidget): ``ActorTreeWidget`` and ``tree()``.

Needs the ``notebook`` extra (``pip install notebook_actors[notebook]``).
"""

from __future__ import annotations

from ._tree_widget import ActorTreeWidget as ActorTreeWidget
from ._tree_widget import default_action as default_action
from ._tree_widget import register_action as register_action
from ._tree_widget import tree as tree

__all__ = ["ActorTreeWidget", "default_action", "register_action", "tree"]
