from pathlib import Path

import evaluate
from evaluate.utils import launch_gradio_widget

# Load the script beside this file: the Space's folder is not named after the module.
module = evaluate.load(str(Path(__file__).with_name("aro_accuracy.py")))
launch_gradio_widget(module)
