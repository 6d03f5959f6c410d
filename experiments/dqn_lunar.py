"""Study 9: DQN vs Double DQN on the LunarLander port, and their policies in Box2D (full size: 16 seeds per variant, 3e5 steps)."""
from jaxq.studies.dqn_lunar import main

if __name__ == "__main__":
    main()
