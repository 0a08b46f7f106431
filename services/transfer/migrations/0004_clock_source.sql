-- Which policy version and measure (or the settings) gave a transfer's clocks their days.
ALTER TABLE transfers ADD COLUMN clock_source text;
