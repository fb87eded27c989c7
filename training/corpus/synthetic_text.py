"""Sentences for the synthetic corpus: the words channel.

Emotion-laden templates per emotion, and emotionally flat templates. Slots (`{who}`,
`{thing}`, `{time}`) are filled at random, so the text teacher must learn the emotion words,
not memorise a handful of sentences.
"""

from __future__ import annotations

WHO = ("Anna", "my brother", "the manager", "our neighbour", "David", "the driver", "Maria", "Tom")
THING = (
    "the report",
    "the car",
    "the letter",
    "the house",
    "the tickets",
    "the phone",
    "the dinner",
    "the package",
    "the meeting",
    "the garden",
)
TIME = ("today", "this morning", "last night", "on Monday", "yesterday", "this week")

EMOTIONAL = {
    "angry": (
        "I am furious that {who} broke {thing} {time}!",
        "This is outrageous, {who} lied to me about {thing}!",
        "Stop it right now, I hate how {who} treats me!",
        "How dare {who} take {thing} without asking!",
        "I am sick and tired of waiting for {thing}!",
        "Get out, I never want to see {who} again!",
        "That is completely unacceptable, {who} ruined {thing}!",
        "I am so angry I could scream about {thing}!",
        "You idiot, you destroyed {thing} {time}!",
        "Shut up, I am fed up with {who} and {thing}!",
    ),
    "sad": (
        "I miss {who} so much, everything feels empty {time}.",
        "I am so sorry, {who} passed away {time}.",
        "I feel lonely and hopeless without {who}.",
        "Nothing matters anymore since we lost {thing}.",
        "I cried all night because {who} left {time}.",
        "It breaks my heart to say goodbye to {thing}.",
        "I am so unhappy, {who} never calls me anymore.",
        "We lost {thing} and I feel miserable {time}.",
        "I wish {who} were still here with us.",
        "Everything went wrong {time} and I feel so low.",
    ),
    "happy": (
        "I am so happy, {who} loved {thing}!",
        "This is wonderful, we finally got {thing} {time}!",
        "I love it, thank you so much for {thing}!",
        "What a fantastic surprise from {who} {time}!",
        "We won, I am thrilled and so excited about {thing}!",
        "That is amazing news, {who} is getting married!",
        "I am delighted, {thing} turned out perfect!",
        "Hooray, {who} is coming home {time}!",
        "Best day ever, I am overjoyed about {thing}!",
        "I feel great, {who} made me laugh all day!",
    ),
}

NEUTRAL = (
    "{who} will bring {thing} {time}.",
    "The meeting with {who} starts at three o'clock.",
    "Please put {thing} on the table by the door.",
    "{who} said the bus leaves from the main station.",
    "I need to check {thing} before {time}.",
    "The shop on the corner opens at nine.",
    "{who} moved {thing} to the second floor.",
    "We should write down the address of {who}.",
    "The weather report for {time} mentions some clouds.",
    "{thing} is in the blue box in the hall.",
    "I will send {who} the details {time}.",
    "The train to the city takes about forty minutes.",
    "{who} asked about {thing} {time}.",
    "Turn left after the bridge and park near {thing}.",
    "The form needs a signature from {who}.",
)
