"""Video conferences (视频会商): a compose-once MCU inside the streams service.

Every participant sends one stream; the server decodes each once, composes one 1280x720 picture
(speaker large plus a grid, or a plain grid), encodes it once and hands the same H.264 packets to
every participant and wall viewer. Audio is mixed per participant without their own voice (mix-minus).
"""
