"""Study 10: uniform vs PER vs rank-PER vs ReaPER vs the article's annealed rule for DQN on the LunarLander port and CartPole-v1 (full size: 32 paired seeds per method)."""
from jaxq.studies.replay import main

if __name__ == "__main__":
    main()
