"""Study 8: TD-variant gallery -- Q, Double Q, Expected SARSA, n-step Q and a new target in one small function."""
from jaxq.studies.td_gallery import main

if __name__ == "__main__":
    main()
