"""Russell's circumplex: the four quadrants of the valence-arousal plane, by name.

A prediction's quadrant (`predict.Predictor`) and the prediction figures
(`predict_plots`) both name quadrants from here.
"""

# (high valence?, high arousal?) -> quadrant name.
QUADRANTS = {
    (True, True): 'Q1 happy/excited',
    (False, True): 'Q2 tense/angry',
    (False, False): 'Q3 sad/depressed',
    (True, False): 'Q4 calm/relaxed',
}


def quadrant(valence_high: bool, arousal_high: bool) -> str:
  """Russell quadrant name for a (valence, arousal) pair of high/low decisions."""
  return QUADRANTS[(bool(valence_high), bool(arousal_high))]
