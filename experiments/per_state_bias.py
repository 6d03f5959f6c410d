"""Study 7: per-state bias -- does Q_theta(s, a*) - Q*(s, a*) grow with the distance to the terminal?"""
from jaxq.studies.per_state_bias import main

if __name__ == "__main__":
    main()
