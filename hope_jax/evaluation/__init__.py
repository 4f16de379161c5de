"""The long-context evaluation suite (perplexity, probes, attention analysis), tables and plots."""
