"""Prompt wording of the composite tasks (shortest path, travelling salesman).

The ``SHORTEST_QUESTION_TEMPLATES`` and ``TSP_QUESTION_TEMPLATES`` strings are the upstream
protocol's, copied byte-exact (typos and stray spaces included) from the released generator
(Tang et al., Sparkle, arXiv 2410.16162; YihongT/Sparkle ``prompts/data.py``, MIT licence) so
that data made here is comparable with the paper's. Upstream placeholder names are kept
(``{start_color}`` holds a label). Everything below the "ours" marker is this project's own
wording, for variants the paper does not have (obstacles, edge weights, closed tours, text-only
twins). Changing any string changes what a (config, seed, index) produces: bump the version of
the task that uses it.
"""

from __future__ import annotations

# -- Upstream (MIT, YihongT/Sparkle prompts/data.py) -------------------------------------------

#: Upstream SPP prompts. 0: move list (the paper's prompt, every item the same text);
#: 1: step-by-step, node labels; 2: step-by-step with start/end coordinates; 3: node-label list.
#: ``{n}`` is the highest node number (n * n); upstream never formats it.
SHORTEST_QUESTION_TEMPLATES: tuple[str, ...] = (
    "The image displays a grid graph where each node is connected to its neighboring nodes to the up, "
    "down, left, and right. Base on the image, reason over the spatial relationships between the objects "
    "nodes and find a shortest path from the start node (green) to the end node (red) without using tools "
    "or code. Please return the sequence of movements as a Python list, where each movement is one of the "
    "following directions: ['up', 'down', 'left', 'right'].",
    "The image displays a grid graph where each node is labeled with text (N1, N2, ... N{n}) and connected "
    "to its neighboring nodes in the up, down, left, and right directions. \n    Based on the image, reason "
    "over the spatial relationships between the nodes and find the shortest path from the start node "
    "(green) to the end node (red) without using tools or code. \nPlease follow these instructions to solve "
    "the path from the start node to the end node:\n1. Let's think step by step.\n2. Select the shortest "
    "path from the starting node to the end node without any loops or backtracking.\n3. At each reasoning "
    "step, output the following details:\n- Step number\n- Current node and the end node\n- The neighboring "
    "nodes of the current node, and their positions relative to the current node.\n- Action decision: "
    "indicate which action to take (left, right, up, down) which node to arrive at.\n4. After completing "
    "the reasoning, summarize the solved path as a list of node labels in a Python list format: [node1 "
    "text label, node2 text label, ...].",
    "Given an image of a grid graph with the following properties:\n\n1. Nodes:\n   - Represented by "
    "coordinates (x, y) or labeled text (N1, N2, ..., N{n})\n   - Connected to neighboring nodes in four "
    "directions:\n     * Up:    (x, y+1)\n     * Down:  (x, y-1)\n     * Left:  (x-1, y)\n     * Right: "
    "(x+1, y)\n\n2. Special Nodes:\n   - Start node: Green, located at coordinate {start_coord}, label: "
    "{start_label}\n   - End node:   Red, located at coordinate {end_coord}, label: {end_label}\n   \n"
    "Please follow these instructions to solve the path from the start node to the end node:\n1. Let's "
    "think step by step.\n2. Select the shortest path from the starting node to the end node without any "
    "loops or backtracking.\n3. At each reasoning step, output the following details:\n- Step number\n- "
    "Current node and the end node\n- The neighboring nodes of the current node, and their positions "
    "relative to the current node.\n- Action decision: indicate which action to take (left, right, up, "
    "down) which node to arrive at.\n4. After completing the reasoning, summarize the solved path as a list "
    "of node labels in a Python list format: [node1 text label, node2 text label, ...].",
    "The image shows a grid graph where each node is labeled (N1, N2, ... N{n}) and connected to "
    "neighboring nodes. Based on the image, find the shortest path from the start node (green) to the end "
    "node (red) without loops or backtracking.\nreturn the solved shortest path in a Python list format. "
    'Example ourput format: ["Na", "Nb", "Nc"].\n',
)

#: Which upstream SPP template each prompt kind uses.
SPP_PROMPT_TEMPLATE = {"moves": 0, "steps": 1, "labels": 3}

#: Upstream TSP prompts. 0: free start ("free"); 1: given start ("fixstart", the upstream default).
#: ``{objects_string}`` holds one "- Nx" line per object, ``{objects}`` a JSON list of the labels.
TSP_QUESTION_TEMPLATES: tuple[str, ...] = (
    "Given an image containing exactly {num_objects} objects:\n{objects_string}\n\nTask:\n1. Analyze the "
    "spatial relationships between these objects.\n2. Determine the shortest path that visits each object "
    "exactly once.\n3. Return the optimal order as a Python list of objects.\n\nRequirements:\n- Use only "
    "the {num_objects} objects listed above.\n- Do not include any additional text, tools, or code.\n- "
    "Provide only the Python list as your answer.\n\nExample output format: {objects}",
    "Given an image containing exactly {num_objects} objects:\n{objects_string}\n\nTask:\n1. Analyze the "
    "spatial relationships between these objects.\n2. Find the shortest path that:\n   a. Starts at the "
    "{start_color} object\n   b. Visits each object exactly once\n3. Return the optimal order as a Python "
    "list of objects.\n\nRequirements:\n- Use only the {num_objects} objects listed above.\n- Do not include "
    "any additional text, tools, or code.\n- Provide only the Python list as your answer.\n- The list must "
    "start with {start_color}.\n\nExample output format: {objects}",
)

TSP_PROMPT_TEMPLATE = {"free": 0, "fixstart": 1}

# -- Ours (this project): variants the paper does not have -------------------------------------

#: Appended (after a newline) to image SPP prompts of grids with obstacles.
SPP_OBSTACLE_NOTE = (
    "Dark gray nodes marked with a white X are blocked: they and their edges are removed, "
    "so a path must not visit them."
)
#: Appended to image SPP prompts of weighted grids.
SPP_WEIGHT_NOTE = (
    "Each edge is labeled with its length (an integer from 1 to 9). The length of a path is the sum "
    "of its edge lengths; a shortest path has the smallest total length."
)

#: Text twin of the SPP scene (no image): the grid and its special nodes in words.
SPP_TEXT_SCENE = (
    "A grid graph has {grid} x {grid} nodes labeled N1 to N{n}. The node in column i (counted from 0, "
    "left to right) and row j (counted from 0, bottom to top) is labeled N(i*{grid} + j + 1): N1 is at "
    "the bottom left, numbers rise up each column and then continue in the next column to the right, "
    "and N{n} is at the top right. Each node is connected to its neighboring nodes to the up, down, "
    "left, and right. 'up' increases the row by 1, 'down' decreases it, 'right' increases the column "
    "by 1, 'left' decreases it.\nThe start node is {start} (column {si}, row {sj}). The end node is "
    "{end} (column {ei}, row {ej})."
)
SPP_TEXT_BLOCKED = "Blocked nodes (removed together with their edges; a path must not visit them): {blocked}."
SPP_TEXT_WEIGHTS = (
    "Edge lengths (the length of a path is the sum of its edge lengths; a shortest path has the "
    "smallest total length): {weights}."
)
#: The task sentence of each SPP text twin, by prompt kind.
SPP_TEXT_TASK = {
    "moves": (
        "Reason over the grid and find a shortest path from the start node to the end node without "
        "using tools or code. Please return the sequence of movements as a Python list, where each "
        "movement is one of the following directions: ['up', 'down', 'left', 'right']."
    ),
    "labels": (
        "Find the shortest path from the start node to the end node without loops or backtracking.\n"
        'Return the solved shortest path in a Python list format. Example output format: ["Na", "Nb", "Nc"].'
    ),
    "steps": (
        "Please follow these instructions to solve the path from the start node to the end node:\n1. Let's "
        "think step by step.\n2. Select the shortest path from the starting node to the end node without "
        "any loops or backtracking.\n3. At each reasoning step, output the following details:\n- Step "
        "number\n- Current node and the end node\n- The neighboring nodes of the current node, and their "
        "positions relative to the current node.\n- Action decision: indicate which action to take (left, "
        "right, up, down) which node to arrive at.\n4. After completing the reasoning, summarize the solved "
        "path as a list of node labels in a Python list format: [node1 text label, node2 text label, ...]."
    ),
}

#: Closed tour (return to start), modelled on the upstream free-start prompt.
TSP_CLOSED_TEMPLATE = (
    "Given an image containing exactly {num_objects} objects:\n{objects_string}\n\nTask:\n1. Analyze the "
    "spatial relationships between these objects.\n2. Determine the shortest closed tour that visits each "
    "object exactly once and then returns to the object it started from.\n3. Return the optimal order as a "
    "Python list of objects.\n\nRequirements:\n- Use only the {num_objects} objects listed above.\n- List "
    "each object exactly once; do not repeat the first object at the end.\n- Do not include any additional "
    "text, tools, or code.\n- Provide only the Python list as your answer.\n\nExample output format: "
    "{objects}"
)
#: Text twins replace the image sentence with coordinates; the rest of each prompt is unchanged.
TSP_IMAGE_OPENING = "Given an image containing exactly {num_objects} objects:\n{objects_string}"
TSP_TEXT_OPENING = (
    "Given exactly {num_objects} objects at these coordinates in a 10 x 10 plane (origin at the bottom "
    "left, x to the right, y up; distances are Euclidean):\n{objects_string}"
)
