"""Knowledge distillation: a teacher too big for the device -> an edge-sized student that the
rest of edgeport exports, validates and hands off like any model (``edgeport distill``).

``students`` (the presets), ``images`` (the unlabelled or class-folder images),
``teacher_outputs`` (the teacher's logits, cached by content), ``train`` (the loop),
``report`` (teacher against student) and ``run`` (the steps in order).
"""
