-- Receipts already settled directly at the hospital, to refuse claiming them again.
CREATE TABLE direct_settlements (
    invoice_no       text NOT NULL,
    institution_code text NOT NULL,
    settlement_id    text NOT NULL,
    person_id        text NOT NULL,
    settled_on       date NOT NULL,
    PRIMARY KEY (invoice_no, institution_code)
);
