"""The DAG's steps as plain functions on a work directory (tasks wrap them one each).

``workspace`` names every path, ``keys`` what determines each result, ``dataset``
the prepared data and its folds, ``training`` the stage plan and one fold,
``ensemble`` the test predictions and the run's scores.
"""
