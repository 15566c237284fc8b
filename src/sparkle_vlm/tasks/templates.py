"""Prompt and answer wording of the Sparkle protocol.

The wording is the upstream protocol's (Tang et al., Sparkle, arXiv 2410.16162; released
generator YihongT/Sparkle, MIT licence): keep it byte-exact, typos included, so that data made
here is comparable with the paper's. Changing any string changes what a (config, seed, index)
produces: bump the version of every task that uses it.
"""

from __future__ import annotations

# -- Sparkle-Instruct (training) questions, protocol 6.1-6.5 ---------------------------------

DIRECTION_QUERIES = (
    "What is the direction from the {a} object to the {b} object?",
    "From the {a} object to the {b} object, which direction should you move?",
    "Determine the direction from the {a} object to the {b} object.",
)

DISTANCE_COMPARE_QUERIES = (
    "Which distance is the shortest? {all_pairs}",
    "Among the given distances, which one is the longest? {all_pairs}",
    "Which distance is shorter, {p1} or {p2}?",
    "Compare the distances: {p1} and {p2}. Which one is longer?",
)
#: What each relative-distance template asks for, aligned with DISTANCE_COMPARE_QUERIES.
DISTANCE_COMPARE_ASKS = ("shortest", "longest", "shorter", "longer")

DISTANCE_ABSOLUTE_QUERIES = (
    "The image is 10x10. What is the distance between the {a} and {b} objects?",
    "In a 10x10 image, what is the distance between the {a} and {b} objects?",
)

POSITION_RELATIVE_QUERIES = (
    "Which relative position is the {o} located at?",
    "What is the position of the {o}?",
    "Identify the location of the {o}.",
)

POSITION_ABSOLUTE_QUERIES = (
    "The image is 10x10. What is the absolute position of the {o} object?",
    "In a 10x10 image, what is the coordinate of the {o} object?",
)

# -- Holistic description, protocol 6.6 ------------------------------------------------------

DESCRIPTION_QUERIES = (
    "Can you describe the spatial relationships between the objects in the 10 by 10 image?",
    "Please provide a description of the spatial relationships among the various objects in the 10 by 10 picture.",
    "I'd like a detailed description of the spatial relationships of the objects shown in the 10 by 10 image.",
    "Could you explain the spatial relationships between different objects in this 10 by 10 image?",
    "Give a comprehensive description of the spatial relationships of the objects within the 10 by 10 image.",
)
DIRECTION_DESCRIPTION_QUERIES = (
    "Can you describe the directional relationships between the objects in the image?",
    "Please provide a description of the directions among the various objects in the picture.",
    "I'd like a detailed description of the directional relationships of the objects shown in the image.",
    "Could you explain the directional relationships between different objects in this image?",
    "Give a comprehensive description of the directions of the objects within the image.",
)
DISTANCE_DESCRIPTION_QUERIES = (
    "Can you describe the distances between the objects in the 10 by 10 image?",
    "Please provide a description of the distances among the various objects in the 10 by 10 picture.",
    "I'd like a detailed description of the distances between the objects shown in the 10 by 10 image.",
    "Could you explain the distances between different objects in this 10 by 10 image?",
    "Give a comprehensive description of the distances of the objects within the 10 by 10 image.",
)
POSITION_DESCRIPTION_QUERIES = (
    "Can you describe the positions of the objects in the 10 by 10 image?",
    "I'd like a detailed description of the positions of the objects shown in the 10 by 10 image.",
    "Could you explain the positions of different objects in this 10 by 10 image?",
    "Give a comprehensive description of the positions of the objects within the 10 by 10 image.",
)

INTRO_PHRASES = (
    "Here's a breakdown of the spatial relationships between the objects in the image:\n\n",
    "Let's describe the spatial relationships among the objects in the image:\n\n",
    "This is an analysis of how the objects are spatially related in the image:\n\n",
)
POSITION_PHRASES = (
    "The {o} object is at the {pos} of the image.",
    "You'll find the {o} object at the {pos} of the image.",
    "The {o} object is located at the {pos} of the image.",
)
COORDINATE_SENTENCE = "The coordinate of the {o} object is ({x:.2f}, {y:.2f})."
DIRECTION_PHRASES = (
    "You can reach the {b} object by going {direction} from the {a} object.",
    "Starting at the {a} object, head {direction} to find the {b} object.",
    "From the {a} object, you can go {direction} to reach the {b} object.",
)
DISTANCE_INTRO_PHRASES = ("Comparing distances:", "When looking at distances:", "Distance-wise:")
DISTANCE_LONGER = "The distance from {a1} to {b1} is longer than the distance from {a2} to {b2}."
DISTANCE_SAME = "The distance from {a1} to {b1} is the same as the distance from {a2} to {b2}."
DISTANCE_VALUE = "The distance between the {a} and {b} objects is {d:.2f}."

# -- Basic-capability test set (multiple choice), protocol 6.7 -------------------------------

MCQ_DIRECTION_TEMPLATES = (
    "What is the direction from the {a} point to the {b} point?\nOptions: {options}\nRespond with the correct option letter in \\boxed{{option}}.",
    "From {a} to {b}, which direction is it?\nChoices: {options}\nReply with the correct option letter in \\boxed{{option}}.",
    "Determine the direction from {a} to {b}.\nSelections: {options}\nAnswer with the correct option letter in \\boxed{{option}}.",
)
MCQ_DISTANCE_TEMPLATES = (
    "Which distance is the shortest?\nOptions: {options}\nRespond with the correct option letter in \\boxed{{option}}.",
    "Identify the longest distance between the points.\nChoices: {options}\nReply with the right option letter in \\boxed{{option}}.",
    "Among the given distances, which one is the longest?\nSelections: {options}\nAnswer with the correct option letter in \\boxed{{option}}.",
    "Which distance is shorter, {p1} or {p2}?\nOptions: {options}\nRespond with the correct option letter in \\boxed{{option}}.",
    "Compare the distances: {p1} and {p2}. Which one is longer?\nChoices: {options}\nReply with the correct option letter in \\boxed{{option}}.",
)
MCQ_DISTANCE_ASKS = ("shortest", "longest", "longest", "shorter", "longer")
MCQ_LOCALIZATION_TEMPLATES = (
    "Where is the {o} object located?\nOptions: {options}\nRespond with the correct option letter in \\boxed{{option}}.",
    "What is the position of the {o} object?\nChoices: {options}\nReply with the correct option letter in \\boxed{{option}}.",
    "Identify the location of the {o} object.\nSelections: {options}\nAnswer with the correct option letter in \\boxed{{option}}.",
)


def letter(i: int) -> str:
    """Option letter of position ``i``: 0 -> "A"."""
    return chr(ord("A") + i)


def options_text(options: list[str] | tuple[str, ...]) -> str:
    """Options as the protocol writes them: ``A. top left, B. top, ...``."""
    return ", ".join(f"{letter(i)}. {o}" for i, o in enumerate(options))
