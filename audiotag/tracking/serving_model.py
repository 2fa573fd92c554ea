"""The pyfunc model audiotag registers, as MLflow's "models from code" entry point.

``mlflow.pyfunc.log_model(python_model=<this file>)`` copies this file into the
logged model, and loading the model runs it, instead of unpickling a Python
object (MLflow's advice: a pickle can run anything when it is loaded).
"""

from mlflow.models import set_model

from audiotag.tracking.pyfunc import AudiotagModel

set_model(AudiotagModel())
