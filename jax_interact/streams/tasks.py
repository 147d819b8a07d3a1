"""What the synthetic task families (SPEC §8) expect of a model: the words it should say and the
windows it should say them in.

The generator (data_pipelines/synthetic.py) writes reference answers that keep to these, and the
scorers (jax_interact/evaluation/scoring.py) judge a model's answers by them.
"""

REPLY_WINDOW_S = 1.5  # an answer should start within this long after its cue
STOP_WINDOW_S = 0.6  # the model stops speaking within this long after a barge-in starts
COUNT_WINDOW_S = 1.0  # a count word starts within this long after its bounce
BEAT_WINDOW_S = (0.3, 0.5)  # a reminder starts at most this early / late around its beat
TRANSLATION_LAG_S = 2.0  # a translation starts within this long after its source word ends

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                "ten", "eleven", "twelve")
START_WORD, STOP_WORD = "start", "stop"
REMINDER_WORD = "now"
